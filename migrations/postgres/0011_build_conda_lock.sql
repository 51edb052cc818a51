-- The packages a conda environment was installed with: an @EXPLICIT list of package URLs
-- with their SHA-256, written when the solve (or the lock) is read, before the image build.
ALTER TABLE builds ADD COLUMN conda_lock TEXT;
