"""workbench: fine-tune small chat models with XTuner and choose the checkpoint to ship, with evidence."""

__version__ = "0.1.0"
