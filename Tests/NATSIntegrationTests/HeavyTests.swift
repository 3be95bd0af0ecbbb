import Testing

/// Suites that start many processes (clusters, several nodes, virtual machines) are nested here and run one
/// test at a time, so that on two cores they do not starve each other, or the light tests beside them, into
/// timeouts. A heavy test waiting for its turn has not started: it holds none of the run's parallel slots
/// (`SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH`, set by scripts/test.sh) and its time limit has not begun.
@Suite(.serialized) enum HeavyTests {}
