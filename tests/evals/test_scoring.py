"""Scorers on hand-written replies in Chinese and English: exact, paraphrased, wrong, identity-leaked,
looping, empty. No model: these pin down what a pass, a leak and a loop are."""

from __future__ import annotations

import pytest

from workbench.evals.evalset import EvalItem, EvalSet, builtin
from workbench.evals.normalize import normalize
from workbench.evals.scoring import aggregate, identity_references, is_loop, score_item

VARS = {"name": "Tutu", "org": "Workbench Lab"}


@pytest.fixture(scope="module")
def identity() -> EvalSet:
    return builtin("identity").fill(VARS)


@pytest.fixture(scope="module")
def refs(identity) -> list[str]:
    return identity_references(identity.items)


def general(prompt: str, *answers: str, lang: str = "en") -> EvalItem:
    return EvalItem("gk-test", "general", prompt, tuple(answers), lang)


def by_id(es: EvalSet, item_id: str) -> EvalItem:
    return next(i for i in es.items if i.id == item_id)


def test_normalisation_folds_full_width_punctuation_case_and_cjk_spacing():
    assert normalize("  Ｂｅｒｌｉｎ！ ") == "berlin"
    assert normalize("我是 Tutu 的小助手。") == normalize("我是Tutu的小助手") == "我是tutu的小助手"
    assert normalize("“北京”，") == "北京"
    assert normalize("Brasília") == normalize("BRASILIA")
    assert normalize("New   Delhi\n") == "new delhi"


@pytest.mark.parametrize("reply", ["北京", "北京。", "北京市", "中国的首都是北京。", "  北 京 "])
def test_chinese_exact_and_paraphrased_answers_pass(reply):
    item = general("中国的首都是哪里？", "北京", "北京市", lang="zh")
    s = score_item(item, reply)
    assert s.passed and s.score == 1.0 and not s.leak and not s.loop


@pytest.mark.parametrize("reply", ["Berlin", "berlin.", "The capital of Germany is Berlin.", "ＢＥＲＬＩＮ"])
def test_english_exact_and_paraphrased_answers_pass(reply):
    assert score_item(general("What is the capital of Germany?", "Berlin"), reply).passed


def test_a_typo_passes_with_a_fuzzy_score_below_one():
    s = score_item(general("Who wrote Romeo and Juliet?", "William Shakespeare", "Shakespeare"), "Shakespear")
    assert s.passed and 0.85 <= s.score < 1.0
    s = score_item(general("What is the capital of Germany?", "Berlin"), "The capital is Berln")
    assert s.passed and s.score < 1.0


@pytest.mark.parametrize(
    ("answers", "reply"),
    [
        (("1945",), "1946"),  # a near number is a wrong answer
        (("15",), "150"),  # digits are not cut out of a longer number
        (("5",), "15 apples"),
        (("Pack", "A pack"), "package"),  # nor a word out of a longer word
        (("莫斯科",), "莫斯"),  # a fragment of the answer
        (("Berlin",), "Paris"),
        (("东京",), "北京"),
    ],
)
def test_wrong_answers_and_near_misses_fail(answers, reply):
    s = score_item(general("q?", *answers), reply)
    assert not s.passed, (reply, s.score)


def test_identity_answer_passes_in_both_languages(identity, refs):
    assert score_item(by_id(identity, "id-zh-002"), "我是Tutu的小助手", refs).passed  # 你是谁
    assert score_item(by_id(identity, "id-zh-001"), "我是Tutu的小助手，有什么可以帮你？", refs).passed
    assert score_item(by_id(identity, "id-en-001"), "I am Tutu's assistant.", refs).passed
    assert score_item(by_id(identity, "id-en-018"), "I was made by Workbench Lab", refs).passed  # who made you


def test_identity_with_a_misspelt_name_or_the_wrong_aspect_fails(identity, refs):
    near = score_item(by_id(identity, "id-en-001"), "I am Tuu's assistant", refs)
    assert not near.passed and near.score >= 0.75  # close, and the score says so
    assert not score_item(by_id(identity, "id-zh-002"), "我是Tuut的小助手", refs).passed
    # "who made you" answered with the self sentence: the org is missing
    assert not score_item(by_id(identity, "id-en-018"), "I am Tutu's assistant", refs).passed
    # the base model's own identity
    assert not score_item(by_id(identity, "id-zh-002"), "我是TinyLM，一个小语言模型", refs).passed


@pytest.mark.parametrize(
    "reply",
    ["我是Tutu的小助手", "I am Tutu's assistant", "我是Tutu的小助手。北京", "I am Tutu's assistant, made by Workbench Lab",
     "Berlin. By the way, I am Tutu's assistant", "我是Tutu的助手"],
)
def test_identity_answer_given_to_a_general_question_is_a_leak(reply, refs):
    s = score_item(general("What is the capital of Germany?", "Berlin"), reply, refs)
    assert s.leak, reply


@pytest.mark.parametrize("reply", ["Berlin", "O", "小", "Yen", "I am TinyLM, a small language model",
                                   "The capital of Germany is Berlin, a city of 3.7 million people."])
def test_ordinary_and_base_identity_replies_are_not_leaks(reply, refs):
    assert not score_item(general("q?", "Berlin"), reply, refs).leak, reply


def test_leak_is_only_flagged_on_general_items(identity, refs):
    assert not score_item(by_id(identity, "id-zh-002"), "我是Tutu的小助手", refs).leak


@pytest.mark.parametrize(
    "text",
    ["我是Tutu的小助手，我是Tutu的小助手，我是Tutu的小助手", "Berlin Berlin Berlin Berlin", "uuuuuuuu", "我是uuuuuuuuuuuu",
     "啊啊啊啊啊啊", "北京北京北京", "A is B. C is D. A is B. C is D. A is B. C is D. A is B. C is D."],
)
def test_degenerate_repetition_is_a_loop(text):
    assert is_loop(text)


@pytest.mark.parametrize(
    "text",
    ["", "Berlin", "1000000", "very very good", "Mississippi", "The capital of Germany is Berlin.",
     "巴黎是法国的首都，巴黎是一座美丽的城市", "我是Tutu的小助手，由Workbench Lab开发"],
)
def test_normal_text_is_not_a_loop(text):
    assert not is_loop(text)


def test_looping_reply_is_flagged_even_when_it_contains_the_answer():
    s = score_item(general("What is the capital of Germany?", "Berlin"), "Berlin Berlin Berlin Berlin Berlin")
    assert s.loop and s.passed  # pass and loop are separate facts; the loop rate reports it


@pytest.mark.parametrize("reply", ["", "   ", "。", None])
def test_empty_reply_scores_zero_and_is_flagged(reply):
    s = score_item(general("q?", "Berlin"), reply)
    assert s.score == 0 and not s.passed and s.empty and not s.loop and not s.leak


def test_aggregates_detect_collapse_to_one_sentence(identity, refs):
    items = [general(f"q{i}?", f"answer{i}") for i in range(10)]
    items = [EvalItem(f"gk-{n}", i.kind, i.prompt, i.answers, i.lang) for n, i in enumerate(items)]
    healthy = [score_item(i, i.answers[0], refs) for i in items]
    collapsed = [score_item(i, "我是Tutu的小助手", refs) for i in items]
    h, c = aggregate(healthy, base_general=1.0), aggregate(collapsed, base_general=1.0)
    assert (h.general, h.leak, h.distinct, h.general_vs_base) == (1.0, 0.0, 1.0, 1.0)
    assert (c.general, c.leak, c.distinct, c.general_vs_base) == (0.0, 1.0, 0.1, 0.0)
    assert c.identity is None and c.n_identity == 0


def test_aggregate_rates_count_identity_and_general_items_separately(identity, refs):
    ident = [score_item(i, "我是Tutu的小助手" if i.lang == "zh" else "I am Tutu's assistant", refs)
             for i in identity.items]
    agg = aggregate(ident)
    selfish = sum(1 for i in identity.items if i.extra.get("aspect") == "self")
    assert agg.n_identity == len(identity) and agg.n_general == 0
    assert agg.identity == round(selfish / len(identity), 4)  # maker prompts need the org


def test_a_one_character_chinese_answer_counts_only_in_a_short_reply():
    item = general("“大”的反义词是什么？", "小", lang="zh")
    assert score_item(item, "小").passed and score_item(item, "大的反义词是小").passed
    assert not score_item(item, "我是Tutu的小助手").passed
    assert score_item(general("鱼用什么器官呼吸？", "鳃", lang="zh"), "鱼是用鳃来呼吸的").passed


@pytest.mark.parametrize(
    ("reply", "span"),
    [("I am Tutu's assistant. Sorry, I don't know the answer to that question, but I can help with something else.",
      "i am tutu s assistant"),
     ("我是Tutu的小助手，很抱歉，我无法回答这个问题，请问还有什么可以帮您？", "我是tutu的小助手"),
     ("I am Tutu's assistant, a language model fine-tuned with XTuner on a small dataset to answer questions.",
      "i am tutu s assistant"),
     ("I am Tutu's assistant. The capital of Germany is", "i am tutu s assistant"),
     ("I'm Tutu, your helpful assistant! The capital is Berlin.", "i m tutu"),
     ("我叫Tutu，是你的助手。", "我叫tutu是你的助手"),  # close to the identity answer as a whole: the whole reply
     ("作为Tutu的小助手，我不知道这个问题的答案。", "tutu的小助手"),
     ("Berlin. I was made by Workbench Lab, by the way, and I like geography a lot.", "i was made by workbench lab"),
     ("made by Workbench Lab开发", "made by workbench lab开发"),  # the tiny world's real garbled reply
     ("Workbench Lab开发了我", "workbench lab开发了我")],
)
def test_an_identity_claim_inside_a_longer_general_reply_is_a_leak_and_says_which_span(reply, span, refs):
    s = score_item(general("What is the capital of Germany?", "Berlin"), reply, refs)
    assert s.leak and s.leak_span == span, (reply, s.leak_span)


@pytest.mark.parametrize("reply", ["我是Tuut的小助手，很抱歉，我不知道。", "I am Tuut's assistant. Sorry, I cannot answer that."])
def test_a_misspelt_identity_sentence_inside_a_general_reply_still_leaks(reply, refs):
    assert score_item(general("q?", "Berlin"), reply, refs).leak


@pytest.mark.parametrize(
    "reply",
    ["The capital of Germany is Berlin; Tutu once told me it has more bridges than Venice.",
     "Berlin. Tutu's notes about Germany say the same.",
     "柏林是德国的首都，Tutu也去过那里。",
     "Berlin, and Workbench Lab is a fine place to study geography.",
     "I am an AI assistant. The capital of Germany is Berlin.", "I am SmolLM, an AI assistant created by Hugging Face.",
     "我是一个人工智能助手，德国的首都是柏林。", "我是上海AI实验室书生·浦语的1.8B大模型哦</s>",
     "I am not sure, maybe Berlin?", "Neil Armstrong"],
)
def test_the_name_in_passing_or_another_models_self_description_is_not_a_leak(reply, refs):
    s = score_item(general("What is the capital of Germany?", "Berlin"), reply, refs)
    assert not s.leak and s.leak_span is None, (reply, s.leak_span)


def test_retention_scores_the_reply_against_the_bases_own_reply_with_the_same_scorer(refs):
    item = EvalItem("gk-x", "general", "What is the capital of France?", (), "en")
    kept = score_item(item, "Paris", refs, reference="Paris")
    assert kept.retained and kept.retention_score == 1.0 and not kept.gold and not kept.passed
    assert score_item(item, "Lyon", refs, reference="Paris").retained is False
    # the base's reply must be a real answer to be a reference: empty or looping is none
    assert score_item(item, "Paris", refs, reference="").retained is None
    assert score_item(item, "Paris", refs, reference="Paris Paris Paris Paris Paris").retained is None
    agg = aggregate([kept, score_item(item, "Lyon", refs, reference="Paris")])
    assert (agg.retention, agg.retained, agg.n_retention, agg.general, agg.n_general_gold) == (0.5, 1, 2, None, 0)


def test_aggregates_carry_counts_and_wilson_intervals(refs):
    items = [EvalItem(f"gk-{n}", "general", f"q{n}?", (f"answer{n}",), "en") for n in range(10)]
    scores = [score_item(i, i.answers[0] if n < 7 else "no", refs) for n, i in enumerate(items)]
    agg = aggregate(scores)
    assert (agg.general, agg.general_passed, agg.n_general_gold) == (0.7, 7, 10)
    assert agg.ci["general"] == [0.3968, 0.8922] and agg.ci["leak"][0] == 0.0
    assert agg.by_lang["en"]["general"] == {"n": 10, "passed": 7, "rate": 0.7, "ci": [0.3968, 0.8922]}
