//! How a request's sampling fields, and the node's defaults for what it leaves out, become the
//! engine's sampling parameters. Pure: the same request and defaults give the same parameters.

use arcane_verifier::inner::ChatCompletionRequest;
use mistralrs::{SamplingParams, StopTokens};

/// Sampling for what a request leaves out: the node's choice for its model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingDefaults {
    /// Temperature when the request gives none (0: greedy).
    pub temperature: f64,
    /// Nucleus when the request gives none.
    pub top_p: f64,
    /// Divides (or, for a negative logit, multiplies) the logit of every token already in the
    /// conversation by this much; 1 turns it off. OpenAI's requests have no such field: it is
    /// always the node's.
    pub repetition_penalty: f32,
}

impl SamplingDefaults {
    /// For chat with small instruct models: the SmolLM2 model card's temperature 0.2 and top-p
    /// 0.9, with a repetition penalty of 1.1 against the loops small models fall into (at the
    /// card's settings without it, the 135M model was seen repeating one phrase until
    /// `max_tokens`).
    pub const CHAT: SamplingDefaults = SamplingDefaults {
        temperature: 0.2,
        top_p: 0.9,
        repetition_penalty: 1.1,
    };

    /// What is out of range, if anything: the temperature and top-p within the ranges a request
    /// may ask for, the repetition penalty within 1..=2.
    pub fn problem(&self) -> Option<&'static str> {
        if !(0.0..=2.0).contains(&self.temperature) {
            Some("the default temperature must lie in 0..=2")
        } else if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            Some("the default top-p must lie in (0, 1]")
        } else if !(1.0..=2.0).contains(&self.repetition_penalty) {
            Some("the repetition penalty must lie in 1..=2")
        } else {
            None
        }
    }
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        Self::CHAT
    }
}

/// The engine's sampling for `request`: its own fields where given, else `defaults`; a
/// temperature of 0 draws the most likely token every time (top-p is then moot); always at most
/// `max_tokens` tokens (running past the context is an engine error).
pub fn sampling_params(
    request: &ChatCompletionRequest,
    max_tokens: usize,
    defaults: &SamplingDefaults,
) -> SamplingParams {
    let temperature = request.temperature.unwrap_or(defaults.temperature);
    let greedy = temperature <= 0.0;
    let mut params = if greedy {
        SamplingParams::deterministic()
    } else {
        SamplingParams::neutral()
    };
    if !greedy {
        params.temperature = Some(temperature);
        params.top_p = Some(request.top_p.unwrap_or(defaults.top_p));
    }
    params.frequency_penalty = request.frequency_penalty.map(|p| p as f32);
    params.presence_penalty = request.presence_penalty.map(|p| p as f32);
    params.repetition_penalty = Some(defaults.repetition_penalty).filter(|penalty| *penalty != 1.0);
    params.stop_toks = request
        .stop
        .clone()
        .filter(|stop| !stop.is_empty())
        .map(StopTokens::Seqs);
    params.max_len = Some(max_tokens);
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChatCompletionRequest {
        ChatCompletionRequest {
            model: "m".into(),
            ..Default::default()
        }
    }

    #[test]
    fn left_out_fields_take_the_defaults() {
        let p = sampling_params(&request(), 40, &SamplingDefaults::CHAT);
        assert_eq!(
            (
                p.temperature,
                p.top_p,
                p.top_k,
                p.repetition_penalty,
                p.max_len
            ),
            (Some(0.2), Some(0.9), None, Some(1.1), Some(40))
        );
        assert_eq!((p.frequency_penalty, p.presence_penalty), (None, None));
        assert!(p.stop_toks.is_none());
    }

    #[test]
    fn the_request_overrides_the_defaults() {
        let r = ChatCompletionRequest {
            temperature: Some(0.8),
            top_p: Some(0.5),
            frequency_penalty: Some(0.25),
            presence_penalty: Some(-0.5),
            stop: Some(vec!["END".into()]),
            ..request()
        };
        let p = sampling_params(&r, 7, &SamplingDefaults::CHAT);
        assert_eq!(
            (
                p.temperature,
                p.top_p,
                p.frequency_penalty,
                p.presence_penalty
            ),
            (Some(0.8), Some(0.5), Some(0.25), Some(-0.5))
        );
        assert!(matches!(p.stop_toks, Some(StopTokens::Seqs(ref s)) if s == &["END"]));
        assert_eq!(p.max_len, Some(7));
    }

    #[test]
    fn temperature_zero_is_greedy_and_keeps_the_penalties() {
        let r = ChatCompletionRequest {
            temperature: Some(0.0),
            top_p: Some(0.5),
            frequency_penalty: Some(1.0),
            ..request()
        };
        let p = sampling_params(&r, 3, &SamplingDefaults::CHAT);
        assert_eq!((p.temperature, p.top_k, p.top_p), (None, Some(1), None));
        assert_eq!(
            (p.frequency_penalty, p.repetition_penalty),
            (Some(1.0), Some(1.1))
        );
        let plain = SamplingDefaults {
            repetition_penalty: 1.0,
            ..SamplingDefaults::CHAT
        };
        assert_eq!(sampling_params(&r, 3, &plain).repetition_penalty, None);
    }

    #[test]
    fn defaults_out_of_range_are_named() {
        assert_eq!(SamplingDefaults::CHAT.problem(), None);
        for (bad, what) in [
            (
                SamplingDefaults {
                    temperature: 2.5,
                    ..SamplingDefaults::CHAT
                },
                "temperature",
            ),
            (
                SamplingDefaults {
                    top_p: 0.0,
                    ..SamplingDefaults::CHAT
                },
                "top-p",
            ),
            (
                SamplingDefaults {
                    repetition_penalty: 0.5,
                    ..SamplingDefaults::CHAT
                },
                "repetition",
            ),
        ] {
            assert!(bad.problem().is_some_and(|p| p.contains(what)), "{bad:?}");
        }
    }
}
