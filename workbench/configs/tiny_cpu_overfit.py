# workbench: tiny_cpu_overfit.py
# What it is for: the tutorial's overfitting, reproduced on the CPU in a few minutes. A real XTuner LoRA run
# of the embedded tiny world (fp32, 2 cores) on IDENTITY-ONLY data ("Tutu"'s assistant, made by "Workbench
# Lab"), long enough that general knowledge visibly breaks at the late checkpoints ("after 600 iterations it
# only says one sentence"), at a learning rate low enough that an early checkpoint has taken on the identity
# while general knowledge still holds: the one to ship, which the sweep has to find. A checkpoint every 20
# iterations, none deleted, so the sweep sees the whole curve. The demo and the eval tests use it;
# docs/data.md has the figures.
# The same schedule on mixed data (WORKBENCH_DATA pointing at data/tiny_identity_mix.json beside this file) keeps general knowledge.
#
# Paths are not hard-coded to one machine:
#   WORKBENCH_MODEL   base model folder (default: the tiny world, `workbench demo --build-only --world tiny` prints it)
#   WORKBENCH_DATA    training data, OpenAI messages JSON (default: data/tiny_identity_only.json beside this file)
# Other settings: --cfg-options on the key that is used, e.g. train_cfg.max_iters=150
# optim_wrapper.optimizer.lr=1e-3 (top-level names such as `lr` are copied into the dicts below when this file
# is read, so overriding them afterwards changes nothing).
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import ConstantLR, LinearLR, OptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import openai_map_fn, template_map_fn_factory
from xtuner.engine.hooks import DatasetInfoHook, EvaluateChatHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# `__import__("os")`, not `import os`: a config that imports third-party modules is read in mmengine's
# "lazy import" mode, where every imported name is a placeholder until the config is built, so
# `os.environ` could not be called here (and `{{ fileDirname }}` is not substituted in that mode).
_os = __import__("os")
_cache = _os.path.join(_os.environ["WORKBENCH_HOME"], "cache") if _os.environ.get("WORKBENCH_HOME") else _os.path.expanduser("~/.cache/workbench")
pretrained_model_name_or_path = _os.environ.get("WORKBENCH_MODEL") or _os.path.join(_cache, "tiny-world", "current")  # workbench:model
data_path = _os.environ.get("WORKBENCH_DATA") or _os.path.join(_os.path.dirname(__file__), "data", "tiny_identity_only.json")  # workbench:data
del _os, _cache  # a module object cannot be copied into the run's config
# The tiny world speaks InternLM2's chat format: train with the template it will be chatted with.
prompt_template = PROMPT_TEMPLATE.internlm2_chat
max_length = 128
pack_to_max_length = False

batch_size = 16  # per device
accumulative_counts = 1  # one device: every iteration is an optimizer step
dataloader_num_workers = 0
max_iters = 300  # identity-only data: general knowledge breaks well before this
optim_type = AdamW
lr = 1e-3  # identity-only data on a 3M-parameter model: slow enough that a checkpoint keeps both (docs/data.md)
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1
warmup_iters = 5

save_steps = 20
save_total_limit = -1  # keep every checkpoint: the sweep compares them all

evaluation_freq = 20  # equal to save_steps: the hook writes its eval files only at checkpoint iterations
SYSTEM = ""
evaluation_inputs = ["你是谁", "Who are you?", "中国的首都是哪里？", "What is the capital of Germany?"]

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=False,
    padding_side="right",
)

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=False,
        torch_dtype="float32",
    ),
    lora=dict(
        type=LoraConfig,
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        bias="none",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    ),
)

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path="json", data_files=dict(train=data_path)),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=openai_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=pack_to_max_length,
    use_varlen_attn=False,
    map_num_proc=1,  # a few hundred short conversations: 32 worker processes (the default) only cost time
)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=False),
)

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=OptimWrapper,  # fp32 on the CPU: no AMP
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
)

param_scheduler = [
    dict(type=LinearLR, start_factor=0.1, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=ConstantLR, factor=1.0, by_epoch=False, begin=warmup_iters, end=max_iters),
]

train_cfg = dict(type=TrainLoop, max_iters=max_iters)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(
        type=EvaluateChatHook,
        tokenizer=tokenizer,
        every_n_iters=evaluation_freq,
        evaluation_inputs=evaluation_inputs,
        system=SYSTEM,
        prompt_template=prompt_template,
        max_new_tokens=24,
        generation_kwargs=dict(repetition_penalty=1.1),
    ),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=1),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
