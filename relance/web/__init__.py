"""The webhook service (``relance serve``): providers tell Relance what prospects did."""
