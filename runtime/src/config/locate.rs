//! Finds where a value sits in YAML text, by path (`connectors[1].grants.databases[0]`), so
//! that validation errors found after parsing still point at a line and column.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (1-based) of every key and value in a YAML document.
#[derive(Debug, Default)]
pub struct Positions(HashMap<String, (usize, usize)>);

impl Positions {
    /// Indexes `text`; text that does not parse yields what was read before the error.
    pub fn of(text: &str) -> Self {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        let _ = parser.load(&mut walker, false);
        Positions(walker.positions)
    }

    /// Position of `path`, or of its closest known ancestor; (0, 0) when none is known.
    pub fn find(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(&position) = self.0.get(path) {
                return position;
            }
            match path.rfind(['.', '[']) {
                Some(i) => path = &path[..i],
                None => return self.0.get("").copied().unwrap_or((0, 0)),
            }
        }
    }
}

enum Frame {
    Map { key: Option<String> },
    Seq { index: usize },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    positions: HashMap<String, (usize, usize)>,
}

impl Walker {
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Map { key: Some(k) } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                }
                Frame::Map { key: None } => {}
                Frame::Seq { index } => path.push_str(&format!("[{index}]")),
            }
        }
        path
    }

    fn record(&mut self, mark: Marker) {
        let path = self.path();
        self.positions
            .entry(path)
            .or_insert((mark.line(), mark.col() + 1));
    }

    /// A value in the top container is complete.
    fn advance(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key }) => *key = None,
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key: key @ None }) = self.stack.last_mut() {
                    *key = Some(value);
                    self.record(mark);
                } else {
                    self.record(mark);
                    self.advance();
                }
            }
            Event::MappingStart(..) => {
                self.record(mark);
                self.stack.push(Frame::Map { key: None });
            }
            Event::SequenceStart(..) => {
                self.record(mark);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.advance();
            }
            Event::Alias(_) => {
                self.record(mark);
                self.advance();
            }
            _ => {}
        }
    }
}
