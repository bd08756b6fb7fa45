"""One module per workflow rule: read the rule's inputs, write its outputs."""
