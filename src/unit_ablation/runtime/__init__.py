"""Where and how computations run: devices, precision, logging and progress, warm starts."""
