"""The build machinery: recipes -> doit tasks, stage processes, fingerprints and the shared cache."""
