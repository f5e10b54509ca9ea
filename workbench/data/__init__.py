"""Training data and training configs, without starting anything.

- `workbench.data.formats`: read conversations in the common formats (OpenAI messages, alpaca,
  ShareGPT) into OpenAI messages, with errors that name the file and line; the dataset file's text (`dumps`).
- `workbench.data.identity`: the identity dataset builder (paraphrased questions and answers in Chinese and
  English, general conversations mixed in at a chosen ratio, a recipe saved beside the file).
- `workbench.data.inspect`: read an XTuner config and warn about the traps that lose checkpoints or
  cause overfitting.
- `workbench.data.scaffold`: `workbench init`, a project folder ready for `workbench train`.

Nothing here imports textual; torch and mmengine are imported only by `inspect`, inside its functions.
"""
