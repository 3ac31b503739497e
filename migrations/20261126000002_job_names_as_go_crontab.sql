-- Job names as go-crontab allows them: letters of any script, spaces and punctuation. The
-- database keeps the part of the rule that makes a name safe in an etcd key: 1-128
-- characters, no '/', no control character, no space at either end. (The application also
-- refuses invisible formatting characters.)

ALTER TABLE events DROP CONSTRAINT events_subject_check;
ALTER TABLE events ADD CONSTRAINT events_subject_check
    CHECK (stream <> 'job' OR (
        char_length(job_name) BETWEEN 1 AND 128
        AND job_name !~ '[/[:cntrl:]]'
        AND job_name !~ '^ | $'
    ));
