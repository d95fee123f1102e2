"""Every chapter, graded by real nbgrader: the solution scores full marks and runs without errors, the blank
student notebook scores 0, and the committed student notebooks are what `coursekit build` generates."""
import pytest

from coursekit.grading import check_notebook, plan_build, repo_root, solution_notebooks

pytestmark = pytest.mark.slow
CHAPTERS = [p.stem for p in solution_notebooks()]


def test_every_source_has_committed_notebooks_in_sync():
    stale = [str(item.path.relative_to(repo_root())) for item in plan_build() if item.stale]
    assert stale == [], "run `coursekit build` and commit the result"


def test_the_course_has_chapters():
    assert "00_measuring" in CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solution_scores_full_marks_and_runs_clean(chapter):
    result = check_notebook(repo_root() / "solutions" / f"{chapter}.ipynb")
    failures = [(e.grade_id, e.error) for e in result.exercises if e.score < e.max_score]
    assert failures == [] and result.full_marks
    assert result.cell_errors == []
    assert len(result.exercises) >= 4  # 3+ exercises and a graded quiz


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_blank_student_notebook_scores_zero(chapter):
    result = check_notebook(repo_root() / "notebooks" / f"{chapter}.ipynb")
    assert result.max_score > 0 and result.score == 0
