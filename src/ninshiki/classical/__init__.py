"""Classical (pre-deep-learning) methods of the survey, under the same contracts as the deep models."""
