//! How long a job's execution records are kept: for some days, and/or the newest so many. A
//! job's `retention` overrides the fleet's default (the master's `--retention-days` and
//! `--retention-max-records`) side by side: a side the job leaves out is the default's. The
//! master's elected pruner enforces both; whichever keeps fewer records wins.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::job::{optional, reject_unknown_fields, FieldError};

/// The most days a record may be kept: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// The largest record count a job may keep.
pub const MAX_RETENTION_RECORDS: u32 = 10_000_000;

const RETENTION_FIELDS: &[&str] = &["days", "maxRecords"];

/// Days and/or a count of records to keep; `None` on a side: no limit there (for a job: the
/// fleet's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_records: Option<u32>,
}

impl Retention {
    /// A job's `retention` as the user wrote it: an object with `days` (1-36,500) and/or
    /// `maxRecords` (1-10,000,000).
    pub fn from_json(value: Value) -> Result<Self, FieldError> {
        let Value::Object(mut object) = value else {
            return Err(FieldError::new(
                "retention",
                "must be an object with days and/or maxRecords",
            ));
        };
        reject_unknown_fields(&object, RETENTION_FIELDS)
            .map_err(|e| FieldError::new(format!("retention.{}", e.field), e.reason))?;
        let days = bounded(&mut object, "days", MAX_RETENTION_DAYS)?;
        let max_records = bounded(&mut object, "maxRecords", MAX_RETENTION_RECORDS)?;
        Ok(Self { days, max_records })
    }

    /// No limit of its own on either side.
    pub fn is_default(&self) -> bool {
        self.days.is_none() && self.max_records.is_none()
    }

    /// This retention, with each side it leaves out taken from `default`.
    #[must_use]
    pub fn over(self, default: Retention) -> Retention {
        Retention {
            days: self.days.or(default.days),
            max_records: self.max_records.or(default.max_records),
        }
    }

    /// In words: "90 days", "the newest 1000", "30 days, at most the newest 500", "forever".
    pub fn describe(&self) -> String {
        let days = self.days.map(|d| match d {
            1 => "1 day".to_owned(),
            d => format!("{d} days"),
        });
        match (days, self.max_records) {
            (None, None) => "forever".to_owned(),
            (Some(days), None) => days,
            (None, Some(n)) => format!("the newest {n}"),
            (Some(days), Some(n)) => format!("{days}, at most the newest {n}"),
        }
    }
}

fn bounded(
    object: &mut Map<String, Value>,
    name: &str,
    max: u32,
) -> Result<Option<u32>, FieldError> {
    let field = format!("retention.{name}");
    let value: Option<u64> =
        optional(object, name).map_err(|e| FieldError::new(&field, e.reason))?;
    match value {
        Some(n) if !(1..=u64::from(max)).contains(&n) => Err(FieldError::new(
            field,
            format!("{n} is not between 1 and {max}"),
        )),
        Some(n) => Ok(u32::try_from(n).ok()),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn either_side_may_be_set_and_each_is_bounded() {
        let both = Retention::from_json(json!({ "days": 30, "maxRecords": 500 })).unwrap();
        assert_eq!(both.describe(), "30 days, at most the newest 500");
        let days = Retention::from_json(json!({ "days": 1 })).unwrap();
        assert_eq!(days.describe(), "1 day");
        for (value, field) in [
            (json!({ "days": 0 }), "retention.days"),
            (json!({ "days": 36_501 }), "retention.days"),
            (json!({ "maxRecords": -1 }), "retention.maxRecords"),
            (json!({ "maxRecords": "many" }), "retention.maxRecords"),
            (json!({ "weeks": 2 }), "retention.weeks"),
            (json!(30), "retention"),
        ] {
            assert_eq!(Retention::from_json(value).unwrap_err().field, field);
        }
    }

    #[test]
    fn a_side_left_out_is_the_defaults() {
        let default = Retention {
            days: Some(90),
            max_records: None,
        };
        let job = Retention {
            days: None,
            max_records: Some(100),
        };
        assert_eq!(
            job.over(default),
            Retention {
                days: Some(90),
                max_records: Some(100)
            }
        );
        assert_eq!(Retention::default().over(default), default);
        assert_eq!(Retention::default().describe(), "forever");
    }
}
