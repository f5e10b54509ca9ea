"""XTuner's world on disk, read without running XTuner: training configs (`config`: the mmengine load, and
`TrainingConfig`, the one reader of a config's text), work dirs (`workdir`: the config copy, ``iter_N.pth``
checkpoints, ``last_checkpoint``, timestamped logs), checkpoints (`checkpoint`: the ``.pth`` -> PEFT state dict
mapping) and the prompt template table (`templates`).

It sits low: it imports only the ground floor (`workbench.errors`, `workbench.paths`), never the cores above it.
"""
