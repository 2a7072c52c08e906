use std::path::PathBuf;

/// Everything that can go wrong in this crate. Each variant names the file, line, question or
/// field involved and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read or written (the inner error names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),

    /// A battery or word-list TOML file does not parse or has a wrong/unknown field.
    #[error("{file}: invalid TOML: {message}")]
    Toml { file: String, message: String },

    /// A battery parses but breaks a rule that the schema cannot express.
    #[error("{file}: question `{question}`, field `{field}`: {message}")]
    Battery {
        file: String,
        question: String,
        field: String,
        message: String,
    },

    /// Rendering a battery would make more prompts, or more prompt text, than
    /// [`crate::render::MAX_PROMPTS`] and [`crate::render::MAX_PROMPT_BYTES`] allow.
    #[error("battery `{battery}`, question `{question}`: {message}\nhint: fewer options (or `permutations = \"rotations\"`), paraphrases, prefixes, system prompts or variable values")]
    TooManyPrompts {
        battery: String,
        question: String,
        message: String,
    },

    /// No built-in battery or word list has this name.
    #[error("no built-in {kind} named `{name}` (known: {known})")]
    UnknownBuiltin {
        kind: &'static str,
        name: String,
        known: String,
    },

    /// A question refers to a paper YAML question that the import did not find.
    #[error("{file}: question `{question}` imports `{import_name}` from `{import_file}`, which {problem}\nhint: pass the directory that holds the paper's `questions/` tree")]
    Import {
        file: String,
        question: String,
        import_file: String,
        import_name: String,
        problem: String,
    },

    /// A question file of another tool (`llmcomp`, emergent-misalignment YAML) cannot become a
    /// battery: `place` names the entry (index and id) or the line, `message` what was expected.
    #[error("{file}: {place}: {message}")]
    QuestionFile {
        file: String,
        place: String,
        message: String,
    },

    /// A JSONL record line does not parse.
    #[error("{path}:{line}: invalid record: {message}")]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },

    /// A record could not be serialised.
    #[error("could not serialise record: {0}")]
    Serialize(String),

    /// The sandbox could not be set up or its child could not be started or read.
    #[error("sandbox: {0}")]
    Sandbox(String),

    /// A scorer or generator got an input outside its domain.
    #[error("{what}: {message}")]
    Input { what: &'static str, message: String },
}

/// Result alias for this crate.
pub type Result<T, E = EvalError> = std::result::Result<T, E>;
