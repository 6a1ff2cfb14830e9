"""`make bench`: mojaflow's throughput and CPU cost against a bare three-activity Temporal workflow."""
