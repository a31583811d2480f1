"""Synthetic contact-centre data: scenario model, generator, per-shape renderers, faults and truth."""
