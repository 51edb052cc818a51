-- A run "again exactly" repeats an earlier run in the very image that run used: `again_of`
-- names the earlier run, and the run's `image_digest` (set when it is created) is the
-- image it executes in, whatever its release's commit builds today.
ALTER TABLE runs ADD COLUMN again_of TEXT;
