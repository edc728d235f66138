"""politeteacher: semi-supervised instance segmentation with CenterMask and Polite Teacher."""

__version__ = "0.3.0"
