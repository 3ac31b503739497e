-- Run statistics, counted by the notifier as it acts on each record (exactly once, in the
-- same transaction): per job and hour of start time, runs by status and a histogram of
-- durations; and for the whole fleet, runs by status per minute. Pages and the API read a
-- few hundred rows at most, whatever the number of records.

CREATE TABLE run_stats (
    job_name    TEXT NOT NULL,
    -- Start of the hour the runs started in, Unix seconds.
    hour        BIGINT NOT NULL,
    status      TEXT NOT NULL,
    runs        BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (job_name, hour, status)
);

-- Durations of runs that started a process, by bucket: bucket 0 is under 1 ms, bucket b > 0
-- holds [10^((b-1)/10), 10^(b/10)) ms.
CREATE TABLE run_durations (
    job_name TEXT NOT NULL,
    hour     BIGINT NOT NULL,
    bucket   SMALLINT NOT NULL,
    runs     BIGINT NOT NULL,
    PRIMARY KEY (job_name, hour, bucket)
);

CREATE TABLE fleet_minutes (
    -- Unix minute the runs started in.
    minute BIGINT NOT NULL,
    status TEXT NOT NULL,
    runs   BIGINT NOT NULL,
    PRIMARY KEY (minute, status)
);

CREATE INDEX run_stats_hour ON run_stats (hour);
CREATE INDEX run_durations_hour ON run_durations (hour);
