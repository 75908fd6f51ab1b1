"""Sorting photos with the model's help: proposals for unlabeled photos, a review order, moves with undo,
and a 2-D map of the photos (``features``, ``proposals``, ``review``, ``journal``, ``photo_map``)."""
