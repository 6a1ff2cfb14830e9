"""mojaflow's shared package: settings, data contracts, the app database, the payload codec, Temporal access."""
