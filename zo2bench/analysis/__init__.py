"""The design documents against the measurements: their formulas, their claims as data, and verdicts.

    from zo2bench.analysis import claims, evidence, verdicts
    ev = evidence.load("results")                 # flat table of measured values with provenance
    for v in verdicts.judge_all(ev):              # one verdict per claim and machine (or document)
        print(v.claim_id, v.machine_id, v.basis, v.verdict, v.ratio, v.needs)

Modules (no module here imports report, regression or commands):
    units     GB read as 10^9 or 2^30 bytes; claim units and their base units
    formulas  document 002's formulas, as written, with their constants named
    exact     the same with exact parameter counts from the catalog, beside the approximations
    claims    every table cell and quantitative statement of documents 000 and 002 (claims/*.toml)
    evidence  results/ as one table of measured values, each with file, line, cell, commit
    measure   the values that test one claim (pairs for ratios, slopes, the largest model that ran)
    verdicts  the rules (one table) and a verdict per claim and machine
"""
