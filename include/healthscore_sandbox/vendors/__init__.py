"""One module per vendor protocol served by the sandbox."""
