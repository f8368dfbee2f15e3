//! Typed helpers on the generated message types: build a [`pb::Content`]
//! with [`pb::Content::text`], [`pb::Content::file`] or
//! [`pb::Content::custom`], and read one back with [`pb::Message::text`]
//! and its siblings, without matching on the `oneof` by hand.

use crate::pb;
use crate::pb::content::Body;

impl pb::Content {
    /// A text message.
    pub fn text(text: impl Into<String>) -> pb::Content {
        pb::Content {
            body: Some(Body::Text(pb::Text {
                text: text.into(),
                mentions: Vec::new(),
            })),
        }
    }

    /// A text message that mentions these users.
    pub fn text_mentioning(
        text: impl Into<String>,
        mentions: impl IntoIterator<Item = impl Into<String>>,
    ) -> pb::Content {
        pb::Content {
            body: Some(Body::Text(pb::Text {
                text: text.into(),
                mentions: mentions.into_iter().map(Into::into).collect(),
            })),
        }
    }

    /// A file message: the file's metadata (its bytes live at a URL or
    /// under a blob id from the HTTP file API).
    pub fn file(file: pb::File) -> pb::Content {
        pb::Content {
            body: Some(Body::File(file)),
        }
    }

    /// An application-defined payload: `kind` names it (say `"location"`),
    /// `data` is whatever the application encodes.
    pub fn custom(kind: impl Into<String>, data: impl Into<bytes::Bytes>) -> pb::Content {
        pb::Content {
            body: Some(Body::Custom(pb::Custom {
                kind: kind.into(),
                data: data.into(),
            })),
        }
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match &self.body {
            Some(Body::Text(t)) => Some(&t.text),
            _ => None,
        }
    }

    /// The file, if this is a file message.
    pub fn as_file(&self) -> Option<&pb::File> {
        match &self.body {
            Some(Body::File(f)) => Some(f),
            _ => None,
        }
    }

    /// The payload, if this is a custom message.
    pub fn as_custom(&self) -> Option<&pb::Custom> {
        match &self.body {
            Some(Body::Custom(c)) => Some(c),
            _ => None,
        }
    }

    /// The recall, if this is the server's record of one.
    pub fn as_recall(&self) -> Option<&pb::Recall> {
        match &self.body {
            Some(Body::Recall(r)) => Some(r),
            _ => None,
        }
    }

    /// The event, if this is a group system event.
    pub fn as_system(&self) -> Option<&pb::SystemEvent> {
        match &self.body {
            Some(Body::System(s)) => Some(s),
            _ => None,
        }
    }
}

impl pb::File {
    /// A file at a URL.
    pub fn at_url(
        name: impl Into<String>,
        size: u64,
        mime: impl Into<String>,
        url: impl Into<String>,
    ) -> pb::File {
        pb::File {
            name: name.into(),
            size,
            mime: mime.into(),
            location: Some(pb::file::Location::Url(url.into())),
            sha256: bytes::Bytes::new(),
        }
    }

    /// A file uploaded to the server's file API, by its blob id.
    pub fn uploaded(
        name: impl Into<String>,
        size: u64,
        mime: impl Into<String>,
        blob_id: impl Into<String>,
    ) -> pb::File {
        pb::File {
            name: name.into(),
            size,
            mime: mime.into(),
            location: Some(pb::file::Location::BlobId(blob_id.into())),
            sha256: bytes::Bytes::new(),
        }
    }
}

impl pb::Message {
    /// The text, if this is a text message (and not recalled).
    pub fn text(&self) -> Option<&str> {
        self.content.as_ref()?.as_text()
    }

    /// The file, if this is a file message.
    pub fn file(&self) -> Option<&pb::File> {
        self.content.as_ref()?.as_file()
    }

    /// The payload, if this is a custom message.
    pub fn custom(&self) -> Option<&pb::Custom> {
        self.content.as_ref()?.as_custom()
    }

    /// The recall, if this message records one.
    pub fn recall(&self) -> Option<&pb::Recall> {
        self.content.as_ref()?.as_recall()
    }

    /// The event, if this is a group system event.
    pub fn system_event(&self) -> Option<&pb::SystemEvent> {
        self.content.as_ref()?.as_system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_back_as_itself_and_nothing_else() {
        let m = |content| pb::Message {
            content: Some(content),
            ..Default::default()
        };
        let text = m(pb::Content::text("hi"));
        assert_eq!(text.text(), Some("hi"));
        assert!(text.file().is_none() && text.custom().is_none());
        let file = m(pb::Content::file(pb::File::uploaded(
            "a.png",
            3,
            "image/png",
            "b1",
        )));
        assert_eq!(file.file().map(|f| f.name.as_str()), Some("a.png"));
        assert!(file.text().is_none());
        let custom = m(pb::Content::custom("location", b"52.5,13.4".to_vec()));
        assert_eq!(custom.custom().map(|c| c.kind.as_str()), Some("location"));
        let mention = pb::Content::text_mentioning("@bob", ["bob"]);
        assert!(matches!(mention.body, Some(Body::Text(ref t)) if t.mentions == ["bob"]));
        assert_eq!(pb::Message::default().text(), None, "no content");
    }
}
