#!/usr/bin/env python
"""Tables 2 and 3's models trained on real Fashion-MNIST at native 32x32, one recipe for all
(lect_nb.studies.fashion_study, notebook 10a), or with --full LeCT and ResNet on the whole
training set (notebook 10b). One `lect-train` run and one JSON row in
nbs/results/fashion_study/ per model and seed; recorded runs are skipped, interrupted ones resumed:

    python scripts/fashion_study.py                  # the whole plan, in order
    python scripts/fashion_study.py --runs vit:0     # one run
    python scripts/fashion_study.py --dry-run        # print the commands only
    python scripts/fashion_study.py --full           # LeCT and ResNet on all 60,000 images (10b)

A run is resumed only on the machine it started on (elsewhere it starts over; see `begin_run`).
"""
import sys
from lect_nb.studies.fashion_study import main

if __name__ == "__main__":
    sys.exit(main())
