"""The engine: the stage graph, the scheduler, executors (Ray or inline), device leasing, the pipeline."""
