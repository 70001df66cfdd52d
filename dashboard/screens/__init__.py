"""The dashboard's screens: overview, one queue, one job, confirmation and help."""
