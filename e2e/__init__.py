"""mojaflow end to end against the real Payment Manager SDK and the Mojaloop Testing Toolkit (`make e2e`)."""
