# workbench: internlm2_chat_1_8b_qlora_self_cognition_mixed.py
# What it is for: the same corrected fine-tune as internlm2_chat_1_8b_qlora_self_cognition.py (QLoRA on
# InternLM2-Chat-1.8B, one GPU, `internlm2_chat` template, accumulative_counts 1, a checkpoint every 50
# iterations with none deleted, bf16 where the GPU has it, general questions in evaluation_inputs), trained on
# identity data MIXED with general conversations: the tutorial's remedy against forgetting ("在一万条正常的对话
# 数据里混入两千条和小助手相关的数据集"). Build the mix with
#   workbench data identity --name NAME --org ORG --mix general.jsonl --ratio 0.8 --out my_mix.json
# (general.jsonl: your general conversations, OpenAI messages, alpaca or ShareGPT), then point WORKBENCH_DATA
# at it. The recipe saved beside it (my_mix.recipe.json) records the ratio, so eval reports can show which
# mix produced which curve.
#
# Run it as it is:  workbench train internlm2_chat_1_8b_qlora_self_cognition_mixed.py
# Paths come from the environment (or make a project with `workbench init DIR --name NAME --model PATH --mix ...`):
#   WORKBENCH_MODEL      base model folder or hub id        (default: internlm/internlm2-chat-1_8b)
#   WORKBENCH_DATA       training data, OpenAI messages JSON (default: data/tiny_identity_mix.json beside this
#                        file: "Tutu"'s identity mixed with the shipped general facts, 25% general)
#   WORKBENCH_PRECISION  bf16 | fp16 | fp32 (default: bf16 if the GPU supports it, else fp16; fp32 with
#                        --cfg-options model.llm.quantization_config=None runs this file on a CPU, as the tests do)
# Other settings: --cfg-options on the key that is used, e.g. train_cfg.max_iters=300
# optim_wrapper.optimizer.lr=1e-4 (top-level names such as `lr` are copied into the dicts below when this
# file is read, so overriding them afterwards changes nothing).
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import CheckpointHook, DistSamplerSeedHook, IterTimerHook, LoggerHook, ParamSchedulerHook
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR, OptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

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
# `__import__(...)`, not `import`: mmengine reads a config that imports third-party modules in "lazy import"
# mode, where every imported name is a placeholder until the config is built; the module objects are
# deleted after use because a config cannot hold them.
_os = __import__("os")
_torch = __import__("torch")
pretrained_model_name_or_path = _os.environ.get("WORKBENCH_MODEL") or "internlm/internlm2-chat-1_8b"  # workbench:model
data_path = _os.environ.get("WORKBENCH_DATA") or _os.path.join(_os.path.dirname(__file__), "data", "tiny_identity_mix.json")  # workbench:data
_bf16 = _torch.cuda.is_available() and _torch.cuda.is_bf16_supported()
dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(_os.environ.get("WORKBENCH_PRECISION", ""), "bfloat16" if _bf16 else "float16")
del _os, _torch, _bf16

prompt_template = PROMPT_TEMPLATE.internlm2_chat  # the chat model's own format
max_length = 512  # identity conversations are short; no packing, so an iteration is `batch_size` conversations
pack_to_max_length = False

batch_size = 4  # per device
accumulative_counts = 1  # one GPU: every iteration is an optimizer step
dataloader_num_workers = 0
max_iters = 500
optim_type = AdamW
lr = 2e-4
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_iters = 15

save_steps = 50
save_total_limit = -1  # keep every checkpoint: the sweep compares them all

evaluation_freq = 50  # equal to save_steps: the hook writes its eval files only at checkpoint iterations
SYSTEM = ""
evaluation_inputs = ["请你介绍一下你自己", "你是谁", "Who are you?", "中国的首都是哪里？", "请给我介绍五个上海的景点"]

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    trust_remote_code=True,
    padding_side="right",
)

model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        trust_remote_code=True,
        torch_dtype=dtype,
        quantization_config=dict(
            type=BitsAndBytesConfig,
            load_in_4bit=True,
            load_in_8bit=False,
            llm_int8_threshold=6.0,
            llm_int8_has_fp16_weight=False,
            bnb_4bit_compute_dtype=dtype,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
        ),
    ),
    lora=dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.1, bias="none", task_type="CAUSAL_LM"),
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
    type=AmpOptimWrapper if dtype != "float32" else OptimWrapper,  # mixed precision on the GPU
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    **(dict(loss_scale="dynamic", dtype=dtype) if dtype != "float32" else {}),
)

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-5, by_epoch=False, begin=0, end=warmup_iters),
    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters, end=max_iters),
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
        max_new_tokens=128,
        generation_kwargs=dict(repetition_penalty=1.1),
    ),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps, max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

visualizer = None
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
