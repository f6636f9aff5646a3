"""The design documents against the measurements: their formulas, their claims as data, fitted models, verdicts.

    from zo2bench.analysis import claims, evidence, verdicts
    ev = evidence.load("results")                 # flat table of measured values with provenance
    for v in verdicts.judge_all(ev):              # one verdict per claim and machine (or document)
        print(v.claim_id, v.machine_id, v.basis, v.verdict, v.ratio, v.needs)

    from zo2bench.analysis import load, scaling
    a = scaling.analyse(load.load("results"), "h100-80gb-hbm3")   # every fit of one machine's rows

Modules (no module here imports report, regression or commands):
    units     GB read as 10^9 or 2^30 bytes; claim units and their base units
    formulas  document 002's formulas, as written, with their constants named
    exact     the same with exact parameter counts from the catalog, beside the approximations
    claims    every table cell and quantitative statement of documents 000 and 002 (claims/*.toml)
    evidence  results/ as one table of measured values, each with file, line, cell, commit
    matching  the values that test one claim (pairs for ratios, slopes, the largest model that ran)
    verdicts  the rules (one table) and a verdict per claim and machine
    load      results/ as rows (latest of each cell) with their sources, for the fits
    models    physical memory and step-time models (and the documents' forms) as data
    fit       relative least squares: intervals, R², residuals, leave-one-size-out, prediction intervals
    crossover where zo2 becomes as fast as mezo, measured and fitted
    scaling   every fit of one machine; projections to sizes not measured
    plan      what fits a given GPU and host memory, and how fast (predictions)
"""
