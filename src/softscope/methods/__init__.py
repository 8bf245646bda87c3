"""One module per seed method (InSPEcT describe, bias probe, waywardness, PEZ, RLPrompt, interpret, explain, tradeoff)."""
