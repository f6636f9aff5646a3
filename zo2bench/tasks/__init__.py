"""Tasks for the convergence series: a synthetic language and its three tasks, real-data loaders, evaluation."""
