"""Human verification of the cold-start data: the items of a review queue or SFT file
(:mod:`~r1lab.review.items`), the filters' verdicts on them (:mod:`~r1lab.review.checks`),
the decisions in SQLite (:mod:`~r1lab.review.store`), the accepted set as an SFT file
(:mod:`~r1lab.review.export`), the page and its API (:mod:`~r1lab.review.page`,
:mod:`~r1lab.review.app`) and the ``r1lab review`` stage (:mod:`~r1lab.review.stage`)."""
