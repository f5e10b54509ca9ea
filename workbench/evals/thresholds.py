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

#: ...and the identity answer, found inside a longer reply, must cover at least this share of the
#: reply for a partial hit to count: "Berlin. By the way, I am Tutu's assistant" (0.6) is a leak;
#: a long correct answer that happens to mention the name once is not.
LEAK_MIN_COVERAGE = 0.5

#: Degenerate repetition ("loop"): a unit of at least LOOP_MIN_UNIT characters repeated back to back at
#: least LOOP_MIN_REPEATS times, covering at least LOOP_MIN_COVERAGE of the reply. Three back-to-back
#: copies is what the seeds' looping chats look like ("我是…的小助手我是…的小助手我是…"); two copies happen in
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

#: A checkpoint is "safe" when its general pass rate is at least base - GENERAL_TOLERANCE (absolute).
#: 0.05 is about eight of the 170 shipped facts: below that, forgetting is real and not noise from a few
#: borderline fuzzy matches; a small model that loses more than 5 points of general ability is visibly worse.
GENERAL_TOLERANCE = 0.05

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
#: backend's default follows its device (32 on the CPU, 128 on a GPU: `workbench.models.hf.default_batch_size`).
#: The cache is written after each batch, so an interrupt loses at most one batch.
EVAL_BATCH_SIZE = 32
