"""Class analytics over a ``batch`` output: what the whole class got wrong, at a glance.

    load.py        read OUT_DIR (per-student Gradescope reports, grades.csv, instructor records)
    aggregate.py   per assignment and exercise: scores, full marks, misconceptions, failure categories, who
                   needs a look (the JSON form)
    similarity.py  similar answer cells across students (copydetect fingerprints of normalised code)
    changes.py     who changed score after a regrade (``--compare-to``)
    lms.py         grade export for Canvas and Moodle (gradebook CSV)
    plots.py       the score histogram (matplotlib, PNG)
    render.py      the report as HTML, Markdown or JSON
    command.py     ``python -m autograder report``
"""
