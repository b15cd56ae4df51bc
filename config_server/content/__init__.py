"""Content: pure functions from file contents to settings (parsing, profiles, resolution, rendering, limits,
decryption, key positions, rollout plans, the one Environment answer, the one file-name mapping). No git,
no HTTP, no clock.
"""
