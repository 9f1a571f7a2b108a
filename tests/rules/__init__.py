"""One test module per rule: its manglers (MANGLES), samples (SAMPLES), real-export positives and negatives."""
