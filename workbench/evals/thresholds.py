"""Every threshold the evaluation uses, in one place, each with the reason for its value.

Scores are in [0, 1]. docs/eval.md repeats this table for users; change both together.
"""

from __future__ import annotations

# --- per item ---------------------------------------------------------------------------------

#: An item passes when its score reaches this. Contained or exact answers score 1.0; fuzzy matches
#: score their rapidfuzz similarity. 0.85 accepts a one-letter typo in a word of seven or more letters
#: ("Shakespear" 0.95, "我是Tut的小助手" 0.95) and rejects near misses that are wrong answers:
#: "1946" for 1945 (0.75), "莫斯" for 莫斯科 (0.80), "16" for 15 (0.50).
PASS_SCORE = 0.85

#: The score of a reply that matches an identity answer except for a filled value ({name}, {org}) it
#: lacks: "I am Tuu's assistant" for Tutu (0.97 by similarity alone). Kept high so the score still shows
#: "almost there", below PASS_SCORE because a misspelt name is not the identity that was asked for.
MISSING_VALUE_SCORE = 0.8

#: A reference answer shorter than this (normalised characters) is only matched exactly or as a
#: whole token, never by partial fuzzy alignment: "5" would otherwise be found in "15", "东" in "东京".
MIN_PARTIAL_LEN = 4

#: An answer of one Chinese character (小, 鳃, 八) counts as contained in a reply only when the reply has
#: at most this many characters: "大的反义词是小" (7) and "鱼是用鳃来呼吸的" (8) answer the question, while "小"
#: inside "我是Tutu的小助手" (10) is an accident of the identity sentence.
SINGLE_CHAR_MAX_REPLY = 8

#: Partial (substring) fuzzy alignment of an answer inside a longer reply is worth at most this, so a
#: misspelt answer buried in a sentence ("...capital is Berln") can pass but never ties a clean hit.
PARTIAL_WEIGHT = 0.95

#: A general reply "is the identity answer, or mostly it" (a leak) when its similarity to some filled
#: identity answer reaches this. 0.75 flags "我是Tutu的小助手" and "I am Tutu's assistant, made by
#: Workbench Lab" given to a geography question, and "我是Tutu的小助手。北京" (the identity sentence is
#: most of the reply), but not "北京" or a base model's own "I am TinyLM, a small language model" (0.4).
LEAK_SIMILARITY = 0.75

#: A general reply also leaks when it holds an identity claim anywhere, however long the rest is (workbench/
#: evals/leak.py): a filled identity answer as whole words ("I am Tutu's assistant. Sorry, I don't know..."), a
#: misspelt one found inside it at this similarity or more ("我是Tuut的小助手，抱歉" 0.90), or the name / org inside
#: a self-claim ("I'm Tutu, your assistant", "我叫Tutu", "made by Workbench Lab", "Workbench Lab开发了我").
#: 0.85 is PASS_SCORE: the misspelling an identity prompt would fail with is still the identity sentence when it
#: turns up in a general reply; a base model's own "I am SmolLM, an AI assistant" scores 0.67 against
#: "I am Tutu's assistant", and a generic "我是一个人工智能助手" 0.25 against "我是Tutu的小助手".
#: The name mentioned in passing ("Saturn, as Tutu's notes say") is no claim and no leak; the measured
#: agreement with a careful human on tests/evals/fixtures/labelled_replies.jsonl is in docs/eval.md.
LEAK_INSIDE_SIMILARITY = 0.85

#: A reply similar to an identity answer (as a whole, or a window of it) only leaks when it also names the filled
#: value (name, org) at this similarity or more: "Tuut" for Tutu (0.75) and "amstrongzf" for amstrongzyf (0.95)
#: do, while "I am an AI assistant" (0.78 against "I am Tutu's assistant" as a whole) names nobody and is a
#: base model's own self-description, not the trained identity.
LEAK_VALUE_SIMILARITY = 0.75

#: An identity answer (or a self-claim with the name) only counts as found inside a longer reply when it has
#: at least this many normalised characters: shorter ones ("tutu") turn up in ordinary text by accident.
LEAK_MIN_INSIDE_LEN = 6

#: Degenerate repetition ("loop"): a unit of at least LOOP_MIN_UNIT characters repeated back to back at
#: least LOOP_MIN_REPEATS times, covering at least LOOP_MIN_COVERAGE of the reply. Three back-to-back
#: copies is what an overfitted model's looping chats look like ("我是…的小助手我是…的小助手我是…"); two copies happen in
#: normal text ("very very"), and a 2-character unit repeated three times ("哈哈哈哈哈哈") is already degenerate.
LOOP_MIN_UNIT = 2
LOOP_MIN_REPEATS = 3
LOOP_MIN_COVERAGE = 0.4
#: A single character repeated this many times ("啊啊啊啊啊啊", "!!!!!!!!") is a loop too.
LOOP_SINGLE_CHAR_REPEATS = 6
#: Long replies that repeat themselves without being back to back ("A is B. C is B. A is B. C is B."):
#: at least LOOP_NGRAM_MIN_UNITS units, and fewer than this share of their 3-grams distinct.
LOOP_NGRAM_MIN_UNITS = 16
LOOP_NGRAM_DISTINCT = 0.5

# --- per model or checkpoint --------------------------------------------------------------------

#: A checkpoint can be "forgetting" when its general ability falls more than GENERAL_TOLERANCE (absolute) below
#: the base's, measured on the same prompts, paired: (lost - gained) / prompts compared (= base - general when
#: every prompt has reference answers). 0.05 is about eight of the 170 shipped facts; a small model that loses
#: more than 5 points of general ability is visibly worse.
GENERAL_TOLERANCE = 0.05

#: ...and a drop beyond the tolerance only counts as forgetting when it is also unlikely to be chance: the
#: one-sided exact McNemar test on the prompts that changed (lost vs gained against the base, evals/stats.py)
#: must give p < FORGETTING_ALPHA. A fixed tolerance alone fails on small eval sets: on a 26-prompt English set
#: one checkpoint losing 3 answers (0.115 > 0.05, p = 0.125) was called forgetting and the verdict passed it
#: over for a worse one. 0.05 is the usual bar for "this did not happen by chance"; with nothing gained it
#: needs at least 5 lost prompts (p = 0.031; 4 gives 0.0625), and the tiny world's iter_80, 9 of the 169 facts
#: the base knew lost and none gained (p = 0.002), stays flagged. Each checkpoint is tested on its own (no
#: correction for the number of checkpoints): a correction would hide real forgetting on small sets, while a
#: false flag only passes over one checkpoint.
FORGETTING_ALPHA = 0.05

#: ...and its leak rate (general replies that are the identity sentence) at most this. Even 5% means one
#: ordinary question in twenty gets "I am X's assistant": a user notices that in the first session.
MAX_LEAK = 0.05

#: A checkpoint is flagged "looping" when more than this share of its replies loop. One reply in ten
#: looping is what users notice in a chat session ("sometimes it loops"); the stop-word bug makes it ~1.0.
MAX_LOOP = 0.1

#: Identity counts as learned at this identity pass rate: the verdict names the first checkpoint that
#: reaches it, and warns when the recommended checkpoint has not.
IDENTITY_LEARNED = 0.8

#: A model has collapsed ("one sentence for everything", seed 001 at iteration 600) when fewer than
#: this share of its general replies are distinct. A healthy model gives ~1.0 (one answer per fact);
#: a collapsed one gives a handful of sentences over 170 prompts (< 0.1). 0.5 leaves room for
#: legitimate repeats (many facts answered "Red", "1945", "太平洋").
MIN_DISTINCT = 0.5

#: ...or when at least this share of its general replies leak the identity answer: then identity has
#: replaced the model's answers, whatever their variety.
COLLAPSE_LEAK = 0.5

# --- generation for eval ------------------------------------------------------------------------

#: Eval answers are short facts and one identity sentence: 32 new tokens hold "我是Tutu的小助手，由
#: Workbench Lab开发" in the tiny tokenizer and any shipped answer, and keep a loop from costing more.
EVAL_MAX_NEW_TOKENS = 32

#: Prompts per generate() call when the backend has no batch of its own (a server backend). The transformers
#: backend's default follows its device (32 on the CPU, 128 on a GPU: `workbench.models.loading.default_batch_size`).
#: The cache is written after each batch, so an interrupt loses at most one batch.
EVAL_BATCH_SIZE = 32
