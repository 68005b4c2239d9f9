"""Neural networks (Flax modules hold parameters; everything else is a function)."""
