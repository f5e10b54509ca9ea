"""Evaluation core: eval sets, scoring, sweeps over checkpoints, verdicts and reports. Never imports textual."""
