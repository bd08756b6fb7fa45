"""Writing outputs atomically and reading untrusted input files safely."""
