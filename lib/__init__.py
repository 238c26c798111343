"""GFPose toolkit library: a score-based 3D human pose prior (no command-line code lives here)."""
