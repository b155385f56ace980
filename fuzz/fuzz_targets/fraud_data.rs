//! Fraud data from untrusted bytes (`spec/tokens.md` §5): the request a fraud detection service
//! parses, the answer a client parses, and the token granting service's check of fraud data
//! shown with a TGT: never panic; a decoded request or answer re-encodes to the same bytes; no
//! fraud data is accepted under a key list that holds no key.
#![no_main]

use arcane_verifier::fraud_data::{
    FraudDataRequest, FraudDataResponse, check_fraud_data, fraud_data_nonce,
};
use arcane_verifier::tokens::{TOKEN_LEN, Token};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = FraudDataRequest::decode(data) {
        assert_eq!(request.encode(), data);
    }
    if let Ok(answer) = FraudDataResponse::decode(data) {
        assert_eq!(answer.encode(), data);
    }
    if data.len() >= TOKEN_LEN
        && let Ok(tgt) = Token::decode(&data[..TOKEN_LEN])
    {
        let fraud_data = &data[TOKEN_LEN..];
        assert!(check_fraud_data(fraud_data, &tgt, &[], 0).is_err());
        let _ = fraud_data_nonce(&tgt.nonce);
    }
});
