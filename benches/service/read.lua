-- GET of the URL wrk was given (the pipeline list, or one pipeline's status).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
