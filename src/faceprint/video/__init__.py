"""Real-time recognition on video: sources (``sources``), tracking (``tracking``), per-track identity
(``identity``), the loop (``pipeline.VideoRecognizer``), outputs, enrolment from video (``enrollment``) and
clusters of unknown faces (``clustering``). Importing the package loads nothing; import the module you need.
"""
