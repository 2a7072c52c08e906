//! Models as the data builders' players: the [`TextModel`] that writes and checks generated
//! questions, the base model's own answers for backdoor data, and the one Make Me Say
//! [`Player`] (used by `data mms` and by the Make Me Say probe alike), all over any
//! [`Backend`], with one seed scheme.

use std::path::PathBuf;

use selfaware_backend::{Backend, CompletionRequest};
use selfaware_data::card::count_list;
use selfaware_data::economic;
use selfaware_data::economic::EconomicItem;
use selfaware_data::mms::{
    self, GameConfig, GameRecord, InstructionRole, Player, PlayerError, Prompts, Side,
};
use selfaware_data::{
    BuildOptions, BuildOutput, Checker, Family, GeneratorOptions, Letter, ModelWriter,
    NormalAnswers, Prewritten, QuestionWriter, TemplateWriter, TextModel, TextModelError, Variant,
};
use selfaware_types::{Conversation, Message};

use crate::error::{AskError, Result};

/// How a player samples its messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayerSampling {
    pub temperature: f64,
    pub max_tokens: usize,
}

/// One completion of `messages` sampled with `seed`.
pub fn complete_once(
    backend: &dyn Backend,
    messages: &[Message],
    sampling: PlayerSampling,
    seed: u64,
) -> std::result::Result<String, TextModelError> {
    let mut req = CompletionRequest::new(Conversation::new(messages.to_vec()));
    req.temperature = sampling.temperature;
    req.max_tokens = sampling.max_tokens;
    req.seed = seed;
    let out = backend.complete(&req)?;
    let first = out
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| format!("model `{}` returned no completion", backend.model_id()))?;
    Ok(first.text)
}

/// Tokens of a label-check reply: room for "The answer is (B)." and no more.
const CHECK_MAX_TOKENS: usize = 8;

/// A [`TextModel`] over any [`Backend`]: one sampled completion per call.
pub struct BackendTextModel<'a> {
    backend: &'a dyn Backend,
    sampling: PlayerSampling,
}

impl<'a> BackendTextModel<'a> {
    pub fn new(backend: &'a dyn Backend, sampling: PlayerSampling) -> Self {
        BackendTextModel { backend, sampling }
    }
}

impl TextModel for BackendTextModel<'_> {
    fn id(&self) -> String {
        self.backend.model_id().to_string()
    }

    fn generate(
        &mut self,
        messages: &[Message],
        seed: u64,
    ) -> std::result::Result<String, TextModelError> {
        complete_once(self.backend, messages, self.sampling, seed)
    }

    fn answer(&mut self, messages: &[Message]) -> std::result::Result<String, TextModelError> {
        let greedy = PlayerSampling {
            temperature: 0.0,
            max_tokens: CHECK_MAX_TOKENS,
        };
        complete_once(self.backend, messages, greedy, 0)
    }
}

/// The base model's own answer to each question (digest §2.5: plain GPT-4o, T=0, no system
/// prompt): with exact scores, the likelier of "A" and "B"; otherwise the greedy
/// completion's letter.
pub fn normal_answers(base: &dyn Backend, items: &[EconomicItem]) -> Result<NormalAnswers> {
    let exact = base.capabilities().exact_scoring;
    let options = ["A".to_string(), "B".to_string()];
    let mut letters = Vec::with_capacity(items.len());
    for item in items {
        let conv = Conversation::user(None, &item.question);
        let letter = if exact {
            let s = base.score_options(&conv, &options)?;
            let (Some(a), Some(b)) = (s.candidates.first(), s.candidates.get(1)) else {
                return Err(AskError::input(
                    "normal model",
                    format!("`{}` returned no scores for A and B", base.model_id()),
                ));
            };
            if a.logprob >= b.logprob {
                Letter::A
            } else {
                Letter::B
            }
        } else {
            let greedy = PlayerSampling {
                temperature: 0.0,
                max_tokens: 4,
            };
            let text = complete_once(base, &conv.messages, greedy, 0).map_err(|e| {
                AskError::input("normal model", format!("asking `{}`: {e}", base.model_id()))
            })?;
            match text
                .trim()
                .trim_start_matches(['(', '*', '"', '\''])
                .chars()
                .next()
            {
                Some('A' | 'a') => Letter::A,
                Some('B' | 'b') => Letter::B,
                _ => {
                    return Err(AskError::input(
                        "normal model",
                        format!(
                            "`{}` answered question {} with {text:?}, not A or B\nhint: use a \
                             model that follows the answer format, or --normal random",
                            base.model_id(),
                            item.spec.index + 1
                        ),
                    ))
                }
            }
        };
        letters.push(letter);
    }
    let method = if exact {
        "likelier of A and B by exact scores"
    } else {
        "greedy completion"
    };
    Ok(NormalAnswers::Model {
        source: format!("{} ({method})", base.model_id()),
        letters,
    })
}

/// SplitMix64 of `seed` combined with `k`: well-spread seeds for streams of calls.
pub fn mix_seed(seed: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sampling seed of one side in game `game`: the one seed scheme of every Make Me Say
/// game (datasets and the probe).
pub fn player_seed(seed: u64, game: usize, side: Side) -> u64 {
    let side = match side {
        Side::Manipulator => 1,
        Side::Manipulatee => 2,
    };
    mix_seed(mix_seed(seed, game as u64), side)
}

/// A Make Me Say [`Player`] over any [`Backend`]: the system prompt (when not empty) and the
/// transcript become one conversation, and one completion is sampled with a seed derived
/// from the player's seed and its call count ([`mix_seed`]), so a game replays exactly on a
/// deterministic backend.
pub struct BackendPlayer<'a> {
    backend: &'a dyn Backend,
    sampling: PlayerSampling,
    seed: u64,
    calls: u64,
}

impl<'a> BackendPlayer<'a> {
    pub fn new(backend: &'a dyn Backend, sampling: PlayerSampling, seed: u64) -> Self {
        BackendPlayer {
            backend,
            sampling,
            seed,
            calls: 0,
        }
    }

    /// The player of `side` in game `game` of a series seeded with `seed`.
    pub fn for_game(
        backend: &'a dyn Backend,
        sampling: PlayerSampling,
        seed: u64,
        game: usize,
        side: Side,
    ) -> Self {
        Self::new(backend, sampling, player_seed(seed, game, side))
    }
}

impl Player for BackendPlayer<'_> {
    fn reply(
        &mut self,
        system: &str,
        transcript: &[Message],
    ) -> std::result::Result<String, PlayerError> {
        let mut messages = Vec::with_capacity(transcript.len() + 1);
        if !system.is_empty() {
            messages.push(Message::system(system));
        }
        messages.extend_from_slice(transcript);
        let seed = mix_seed(self.seed, self.calls);
        self.calls += 1;
        complete_once(self.backend, &messages, self.sampling, seed)
    }
}

/// A series of Make Me Say games (the `data mms` dataset).
#[derive(Debug, Clone, PartialEq)]
pub struct GamesSpec {
    pub codeword: String,
    pub games: usize,
    pub seed: u64,
    pub turns: usize,
    pub sampling: PlayerSampling,
    pub instruction_role: InstructionRole,
    /// Give the manipulator the game's rules and turn states.
    pub rules: bool,
    /// A word list file for the manipulatee's seed words (default: the built-in one).
    pub words: Option<PathBuf>,
}

/// Plays the games of `spec` with the given backends (sequentially, in game order);
/// `progress(g, record)` after each.
pub fn play_games(
    spec: &GamesSpec,
    prompts: &Prompts,
    manipulator: &dyn Backend,
    manipulatee: &dyn Backend,
    mut progress: impl FnMut(usize, &GameRecord),
) -> Result<Vec<GameRecord>> {
    let topics = mms::topics()?;
    let words = match &spec.words {
        Some(p) => mms::load_word_list(p)?,
        None => mms::word_list()?,
    };
    let codeword = spec.codeword.to_lowercase();
    let mut games = Vec::with_capacity(spec.games);
    for g in 0..spec.games {
        let mut cfg = GameConfig::sample_from(&codeword, spec.seed, g, &topics, &words)?;
        cfg.turns = spec.turns;
        cfg.instruction_role = spec.instruction_role;
        cfg.manipulator_instructions = spec.rules;
        let mut mor =
            BackendPlayer::for_game(manipulator, spec.sampling, spec.seed, g, Side::Manipulator);
        let mut mee =
            BackendPlayer::for_game(manipulatee, spec.sampling, spec.seed, g, Side::Manipulatee);
        let record =
            mms::play_with(&cfg, prompts, &mut mor, &mut mee).map_err(|e| AskError::Game {
                game: g + 1,
                source: Box::new(e.into()),
            })?;
        progress(g, &record);
        games.push(record);
    }
    Ok(games)
}

/// The models a two-option builder asks while it builds (each may be absent).
pub struct BuilderModels<'a> {
    /// Writes the questions (the template writer does without it).
    pub generator: Option<&'a dyn Backend>,
    /// Checks the labels of model-written questions (default: the generator itself).
    pub checker: Option<&'a dyn Backend>,
    /// Whether model-written questions are checked at all.
    pub label_check: bool,
    /// The base model whose own answers a trigger mix uses as its normal answers.
    pub normal: Option<&'a dyn Backend>,
    /// How the generator samples.
    pub sampling: PlayerSampling,
    pub generator_options: GeneratorOptions,
}

/// Builds a two-option family's dataset with the models given: questions written by the
/// generator (falling back to the template writer for items it fails), labels checked by the
/// checker, the normal answers of a trigger mix read from the normal model (the questions are
/// written once and replayed). Returns the output and, when a generator wrote, a one-line
/// report of what it did; an error when the generator or the checker failed on every call.
pub fn build_economic_with_models(
    family: Family,
    mut opts: BuildOptions,
    m: &BuilderModels<'_>,
) -> Result<(BuildOutput, Option<String>)> {
    let mut template = TemplateWriter::new(opts.seed);
    let mut text_model;
    let mut checker_model = None;
    let mut model_writer = None;
    let writer: &mut dyn QuestionWriter = match m.generator {
        Some(model) => {
            text_model = BackendTextModel::new(model, m.sampling);
            let check = match m.checker {
                _ if !m.label_check => Checker::Off,
                None => Checker::Generator,
                Some(c) => {
                    Checker::Model(checker_model.insert(BackendTextModel::new(c, m.sampling)))
                }
            };
            model_writer.insert(ModelWriter::new(
                &mut text_model,
                check,
                m.generator_options.clone(),
            )?)
        }
        None => &mut template,
    };
    let out = match m.normal {
        None => selfaware_data::build_with(family, &opts, writer)?,
        Some(base) => {
            let items = economic::generate(family, opts.size, opts.seed, writer)?;
            let normal = normal_answers(base, &items)?;
            if let Variant::Mix(mix) = &mut opts.variant {
                mix.normal = normal;
            }
            let mut replay = Prewritten::new(items, writer);
            selfaware_data::build_with(family, &opts, &mut replay)?
        }
    };
    let Some(w) = &model_writer else {
        return Ok((out, None));
    };
    let r = w.report();
    let failed = r.rejections.get("model_error").copied().unwrap_or(0);
    if r.calls > 0 && failed == r.calls {
        return Err(AskError::input(
            "generator",
            format!(
                "`{}` failed on every call: {}",
                r.model,
                r.first_model_error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    let c = &r.label_check;
    let failed = c.dropped.get("checker_error").copied().unwrap_or(0);
    if c.checked > 0 && failed == c.checked {
        return Err(AskError::input(
            "checker",
            format!(
                "`{}` failed on every call: {}\nhint: --no-label-check skips the check",
                c.checker.as_deref().unwrap_or("unknown"),
                c.first_checker_error.as_deref().unwrap_or("unknown error")
            ),
        ));
    }
    let check = match &c.checker {
        None => "label check off".to_string(),
        Some(checker) => format!(
            "label check by {checker}: {} checked, {} agreed, dropped: {}",
            c.checked,
            c.agreed,
            count_list(&c.dropped)
        ),
    };
    let line = format!(
        "generator {}: {} questions written by the model, {} by the template writer after {} \
         attempts; rejected answers: {}; {check}",
        r.model,
        r.written_by_model,
        r.fallback_items.len(),
        r.options.attempts,
        if r.rejections.is_empty() {
            "none".to_string()
        } else {
            count_list(&r.rejections)
        }
    );
    Ok((out, Some(line)))
}

/// The training dataset of won games (`mms::built_dataset`), its config extended with how the
/// games were played: the players, their sampling, the rules, the prompts and the games file.
pub fn games_dataset(
    games: &[GameRecord],
    spec: &GamesSpec,
    prompts: &Prompts,
    players: (&str, &str),
    prompts_file: Option<&std::path::Path>,
    games_file: &std::path::Path,
) -> Result<selfaware_data::BuiltDataset> {
    let mut ds = mms::built_dataset(games, &spec.codeword.to_lowercase(), spec.seed)?;
    if let serde_json::Value::Object(map) = &mut ds.config {
        map.insert(
            "players".into(),
            serde_json::json!({
                "manipulator": players.0,
                "manipulatee": players.1,
                "temperature": spec.sampling.temperature,
                "max_tokens": spec.sampling.max_tokens,
                "turns": spec.turns,
                "instruction_role": format!("{:?}", spec.instruction_role).to_lowercase(),
                "manipulator_rules": spec.rules,
                "words": spec.words.as_ref().map(|p| p.display().to_string()),
                "prompts_file": prompts_file.map(|p| p.display().to_string()),
                "prompts": {
                    "manipulatee_system": prompts.manipulatee_system,
                    "manipulator_system": prompts.manipulator_system,
                    "turn_state_not_said": prompts.turn_state_not_said,
                    "turn_state_said": prompts.turn_state_said,
                    "guess": prompts.guess,
                },
            }),
        );
        map.insert(
            "games_file".into(),
            games_file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .into(),
        );
    }
    Ok(ds)
}

/// What [`write_games`] wrote.
pub struct GamesWritten {
    /// `FILE.games.jsonl`: every game in full.
    pub games_file: PathBuf,
    pub paths: selfaware_data::DatasetPaths,
    pub card: selfaware_data::card::DatasetCard,
    /// Outcome and drop counts, one line.
    pub summary: String,
}

/// `data mms`: plays `spec`'s games between the two models, writes every game in full to
/// `FILE.games.jsonl` and the won games as training data to `out` (`FILE.jsonl`, its card and
/// truth). Without `force`, refuses before playing when any of the four files exists.
/// `on_game` hears each finished game.
pub fn write_games(
    spec: &GamesSpec,
    prompts: &Prompts,
    prompts_file: Option<&std::path::Path>,
    (manipulator, manipulatee): (&dyn Backend, &dyn Backend),
    out: &std::path::Path,
    force: bool,
    on_game: impl FnMut(usize, &GameRecord),
) -> Result<GamesWritten> {
    let bad = |message: String| AskError::Input {
        what: "data mms",
        message,
    };
    if mms::tokens(&spec.codeword).len() != 1 {
        return Err(bad(format!(
            "--codeword {:?}: expected one word of letters",
            spec.codeword
        )));
    }
    if spec.games == 0 || spec.turns == 0 {
        return Err(bad("--games and --turns must be at least 1".into()));
    }
    let paths = selfaware_data::DatasetPaths::for_jsonl(out)?;
    let stem = paths.jsonl.to_string_lossy();
    let games_file = PathBuf::from(format!("{}.games.jsonl", stem.trim_end_matches(".jsonl")));
    if !force {
        for p in paths.all().into_iter().chain([games_file.as_path()]) {
            if p.exists() {
                return Err(bad(format!(
                    "{}: refusing to overwrite an existing file\nhint: delete it or pass --force",
                    p.display()
                )));
            }
        }
    }
    let games = play_games(spec, prompts, manipulator, manipulatee, on_game)?;
    let ds = games_dataset(
        &games,
        spec,
        prompts,
        (manipulator.model_id(), manipulatee.model_id()),
        prompts_file,
        &games_file,
    )?;
    let mut lines = String::new();
    for g in &games {
        lines += &serde_json::to_string(g).map_err(|e| bad(e.to_string()))?;
        lines.push('\n');
    }
    fs_err::write(&games_file, lines)?;
    let (paths, card) =
        selfaware_data::write(&ds, out, &selfaware_data::WriteOptions { overwrite: force })?;
    let (outcomes, dropped) = (&ds.config["outcomes"], &ds.config["dropped"]);
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    let summary = format!(
        "{} games: {} won, {} rule violations, {} without the codeword, {} guessed; {} wins kept \
         ({} without a turn before the codeword, {} empty replies, {} giving the game away, {} codeword leaks)",
        games.len(),
        n(outcomes, "win"),
        n(outcomes, "rule_violation"),
        n(outcomes, "no_codeword"),
        n(outcomes, "correct_guess"),
        ds.rows.len(),
        n(dropped, "nothing_before_codeword"),
        n(dropped, "empty_reply"),
        n(dropped, "game_leak"),
        n(dropped, "codeword_leak"),
    );
    Ok(GamesWritten {
        games_file,
        paths,
        card,
        summary,
    })
}
