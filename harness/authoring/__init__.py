"""Authoring tools: from annotated images to explicit, reviewable YAML suites.

The pieces, one module per concept:

- :mod:`~harness.authoring.drafts`: a case before it is written (:class:`CaseDraft`),
  id sanitising and paths relative to the suite;
- :mod:`~harness.authoring.writer`: suite text (header with every default written out,
  one block per case) and appending to an existing file without touching its text
  (:mod:`~harness.authoring.yamltext` holds the small YAML text builders);
- :mod:`~harness.authoring.importers`: LabelMe, COCO (with :mod:`~harness.authoring.rle`)
  and Pascal VOC readers;
- :mod:`~harness.authoring.classmap`: mapping annotation classes onto the model's classes;
- :mod:`~harness.authoring.expand`: one case per image of a glob, masks found by a naming
  pattern (``import masks``, ``new --glob``), so suites stay explicit;
- :mod:`~harness.authoring.validate`: every check that needs no model weights;
- :mod:`~harness.authoring.sample`: the most / least confident images of a class;
- :mod:`~harness.authoring.commands`: the command-line commands behind :mod:`harness.cli`.
"""

from harness.authoring.drafts import CaseDraft, RegionDraft, sanitise_id

__all__ = ["CaseDraft", "RegionDraft", "sanitise_id"]
