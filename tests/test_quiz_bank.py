"""The real question bank (coursekit/quiz/bank/*.json) and the answer generators against hand-computed values."""
import itertools
import math
import re

import pytest

from coursekit.quiz import catalog, generators
from coursekit.quiz.answers import LETTERS, check_answer, format_number, missing_keywords
from coursekit.quiz.generators import instantiate

MAX_COMBINATIONS = 400  # every parameter combination up to this many, otherwise this many seeds


@pytest.fixture(scope="module")
def bank():
    catalog.clear_cache()
    return catalog.load_bank()


# ---- generators against hand-computed values --------------------------------------------------------------

def test_model_memory_gb():
    assert generators.model_memory_gb(7, "int4", 128) == pytest.approx(3.5 + 0.109375)  # + 7e9/128 FP16 scales
    assert generators.model_memory_gb(7, "fp16", None) == pytest.approx(14.0)
    assert generators.model_memory_gb(7, "fp32", None) == pytest.approx(28.0)
    assert generators.model_memory_gb(7, "int8", None) == pytest.approx(7.0)


def test_kv_cache_gb():
    # Llama-2-7B-like: 2 (K, V) * 32 layers * 32 heads * 128 dims * 4096 tokens * 2 bytes
    assert generators.kv_cache_gb(32, 32, 128, 4096, 1, "fp16") == pytest.approx(2 * 32 * 32 * 128 * 4096 * 2 / 1e9)
    assert generators.kv_cache_gb(32, 8, 128, 4096, 4, "int8") == pytest.approx(2 * 32 * 8 * 128 * 4096 * 4 / 1e9)


def test_scale_zero_point():
    # affine, unsigned [0, 255]: S = 4/255, Z = 0 - round(-1 / S) = round(63.75) = 64
    assert generators.scale_zero_point(-1.0, 3.0, 8, False, "scale") == pytest.approx(4 / 255, rel=1e-6)
    assert generators.scale_zero_point(-1.0, 3.0, 8, False, "zero_point") == 64
    # symmetric, signed [-128, 127]: S = amax / 127.5, Z = 0
    assert generators.scale_zero_point(-2.0, 1.0, 8, True, "scale") == pytest.approx(2 / 127.5, rel=1e-6)
    assert generators.scale_zero_point(-2.0, 1.0, 8, True, "zero_point") == 0
    # the range is widened to contain 0: [0.5, 2] acts as [0, 2]
    assert generators.scale_zero_point(0.5, 2.0, 4, False, "scale") == pytest.approx(2 / 15, rel=1e-6)


def test_pure_generators():
    assert generators.compression_ratio(16, 4, 128) == pytest.approx(16 / 4.125)
    assert generators.compression_ratio(32, 8, None) == 4
    assert generators.sparsity_params(100, 0.9) == pytest.approx(10)
    assert generators.lowrank_params(4096, 4096, 64) == 524288


def test_quantize_value():
    assert generators.quantize_value(0.5, 0.1, 0, 8) == 5
    assert generators.quantize_value(0.25, 0.1, 0, 8) == 2  # 2.5 rounds half to even
    assert generators.quantize_value(0.35, 0.1, 0, 8) == 4  # 3.5 -> 4
    assert generators.quantize_value(100.0, 0.1, 0, 8) == 127 and generators.quantize_value(-100.0, 0.1, 0, 8) == -128
    assert generators.quantize_value(1.0, 0.5, -3, 4) == -1


# ---- the real bank --------------------------------------------------------------------------------------

def test_every_bank_file_validates_and_ids_are_unique(bank):
    ids = [q.id for q in bank.questions]
    assert len(ids) == len(set(ids))
    assert all(f.startswith(f"ch{catalog.normalize_chapter(f[2:4])}_") for f in bank.files)
    stats = catalog.bank_stats()
    assert stats["total"] == len(ids) == sum(stats["by_chapter"].values())


def _expected_response(q) -> str:
    if q.type == "single":
        return LETTERS[q.answer]
    if q.type == "multiple":
        return ",".join(LETTERS[i] for i in q.answer)
    if q.type == "numeric":
        return repr(q.answer) + (f" {q.unit}" if q.unit else "")
    return q.model_answer


def test_every_fixed_question_accepts_its_own_answer(bank):
    """The stored answer, typed as a learner would, is judged right; short model answers pass their keywords."""
    failures = []
    for q in bank.questions:
        if q.is_parameterised:
            continue
        if q.type == "short" and missing_keywords(q.model_answer, q.keywords):
            failures.append(f"{q.id}: model answer misses {missing_keywords(q.model_answer, q.keywords)}")
        elif not check_answer(q, _expected_response(q)).correct:
            failures.append(f"{q.id}: own answer {_expected_response(q)!r} judged wrong")
    assert failures == []


def _instances(q):
    names = sorted(q.params)
    combos = math.prod(len(q.params[n]) for n in names)
    if combos <= MAX_COMBINATIONS:
        for values in itertools.product(*(q.params[n] for n in names)):
            yield dict(zip(names, values))
    else:
        for seed in range(MAX_COMBINATIONS):
            yield generators.draw_values(q, seed)


def test_every_generated_question_computes_through_the_library(bank):
    """Every parameter combination gives a finite answer, and an instance accepts its own formatted answer."""
    failures = []
    for q in (q for q in bank.questions if q.generator):
        for values in _instances(q):
            try:
                answer = generators.compute_answer(q.generator, values)
                q.prompt.format(**values)
            except Exception as err:  # noqa: BLE001 -- report every broken combination at once
                failures.append(f"{q.id} {values}: {type(err).__name__}: {err}")
                continue
            if not math.isfinite(answer):
                failures.append(f"{q.id} {values}: answer {answer}")
        for seed in range(3):
            instance = instantiate(q, seed)
            typed = format_number(instance.answer) + (f" {instance.unit}" if instance.unit else "")
            if not check_answer(instance, typed).correct:
                failures.append(f"{q.id} seed {seed}: the shown answer {typed!r} is judged wrong (tolerance?)")
    assert failures == []


# ---- option lengths: the correct option must not be guessable by its length ------------------------------

MAX_LONGEST = 0.30   # per chapter, share of single-choice questions whose correct option is uniquely the longest
MAX_SHORTEST = 0.40  # ... uniquely the shortest
MAX_ONE_RANK = 0.50  # ... at any one length rank (e.g. "always the second longest")
MAX_MULTI_TOP_K = 0.20  # bank-wide, share of multiple-choice questions whose answers are exactly the k longest options
MAX_MULTI_RATIO = 1.15  # bank-wide, mean over questions of (mean correct length / mean wrong length)


def _length_rank(q) -> int:
    """How many options are strictly longer than the correct one (0: the correct one is (jointly) longest)."""
    lengths = [len(c) for c in q.choices]
    return sum(n > lengths[q.answer] for n in lengths)


def _uniquely(q, pick) -> bool:
    lengths = [len(c) for c in q.choices]
    others = lengths[:q.answer] + lengths[q.answer + 1:]
    return lengths[q.answer] > max(others) if pick == "longest" else lengths[q.answer] < min(others)


def test_length_helpers_on_a_hand_made_question():
    from coursekit.quiz.schema import Question

    q = Question(id="ch00-x", chapter="00", topic="t", difficulty="easy", type="single", prompt="?",
                 explanation=".", section="00_x#y", choices=("aaaa", "bb", "ccc", "d"), answer=2)
    assert _length_rank(q) == 1 and not _uniquely(q, "longest") and not _uniquely(q, "shortest")
    q0 = Question(**{**q.__dict__, "answer": 0})
    assert _length_rank(q0) == 0 and _uniquely(q0, "longest")
    assert _uniquely(Question(**{**q.__dict__, "answer": 3}), "shortest")


@pytest.mark.parametrize("chapter", [f"{i:02d}" for i in range(10)])
def test_correct_single_choice_option_is_not_given_away_by_length(bank, chapter):
    singles = [q for q in bank.questions if q.chapter == chapter and q.type == "single"]
    if not singles:
        pytest.skip(f"chapter {chapter} has no single-choice questions")
    n = len(singles)
    longest = [q.id for q in singles if _uniquely(q, "longest")]
    shortest = [q.id for q in singles if _uniquely(q, "shortest")]
    assert len(longest) <= MAX_LONGEST * n, f"correct option uniquely longest in {len(longest)}/{n}: {longest}"
    assert len(shortest) <= MAX_SHORTEST * n, f"correct option uniquely shortest in {len(shortest)}/{n}: {shortest}"
    ranks = [_length_rank(q) for q in singles]
    for rank in set(ranks):
        share = ranks.count(rank) / n
        assert share <= MAX_ONE_RANK, f"{ranks.count(rank)}/{n} correct options have {rank} longer option(s)"


def test_correct_multiple_choice_options_are_not_the_longer_ones(bank):
    multis = [q for q in bank.questions if q.type == "multiple" and len(q.answer) < len(q.choices)]
    assert multis
    top_k, ratios = 0, []
    for q in multis:
        lengths = [len(c) for c in q.choices]
        right = [lengths[i] for i in q.answer]
        wrong = [n for i, n in enumerate(lengths) if i not in q.answer]
        ratios.append((sum(right) / len(right)) / (sum(wrong) / len(wrong)))
        top_k += min(right) > max(wrong)
    assert top_k <= MAX_MULTI_TOP_K * len(multis), f"answers are exactly the longest options in {top_k}/{len(multis)}"
    assert sum(ratios) / len(ratios) <= MAX_MULTI_RATIO, f"correct options are {sum(ratios) / len(ratios):.2f}x longer"


# ---- learner-facing text: no commissioning sources, no numbers from one machine -------------------------

FORBIDDEN = re.compile(r"seed tutorial|\bthe seeds\b|course's (?:cpu |ort |onnx runtime )?measurements|"
                       r"the course measured|on the course's|on this machine|\bour machine", re.IGNORECASE)


def _learner_text(q):
    yield "prompt", q.prompt
    yield "explanation", q.explanation
    if q.model_answer:
        yield "model_answer", q.model_answer
    for i, choice in enumerate(q.choices or ()):
        yield f"choice {LETTERS[i]}", choice


def test_forbidden_phrase_pattern():
    for bad in ("from the seed tutorials", "In the course's CPU measurements", "the course measured 4x", "The seeds warn"):
        assert FORBIDDEN.search(bad), bad
    assert not FORBIDDEN.search("the chapter's benchmark measures both on your machine")


def test_learner_text_names_no_seed_tutorials_and_no_course_machine(bank):
    """Learners never saw the commissioning tutorials, and a speedup measured once on one machine is not a fact."""
    hits = [f"{q.id} {field}: {FORBIDDEN.search(text).group(0)!r}" for q in bank.questions
            for field, text in _learner_text(q) if FORBIDDEN.search(text)]
    assert hits == []
