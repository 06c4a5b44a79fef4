"""The storage benchmark's arithmetic (the run itself is a script, not a test)."""

from benchmarks.pg_storage import RESULTS_PER_DAY, TableSize, human, per_row, projection


def test_bytes_per_row_and_the_projection_to_300m_a_day() -> None:
    sizes = [TableSize("race_participants", 900, 100, 200), TableSize("races", 60, 0, 40)]
    assert sizes[0].total == 1200 and per_row(sizes, 2) == 650.0
    p = projection(1000.0)
    assert (
        p["day"] == 1000.0 * RESULTS_PER_DAY and p["month"] == 30 * p["day"] and p["year"] == 365 * p["day"]
    )
    assert human(1_274) == "1.3 KB" and human(382.3e9) == "382.3 GB" and human(2e18) == "2,000.0 PB"
