"""The job side of a sweep and its wire: records, channels, the trial's account, stopping."""
