"""What compute buys, pure statistics: expected validation performance, bands, extrapolation, the gain bound."""
