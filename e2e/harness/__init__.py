"""The end-to-end stack: installs (install.sh), starts and stops the real SDK, TTK, Redis and our stand-ins."""
