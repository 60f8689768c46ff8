"""attnzoo compare: train one network with different attention modules and compare accuracy against cost."""
