package entity

import (
	"slices"
	"testing"
)

func TestContractTypesSorted(t *testing.T) {
	if !slices.IsSorted(ContractTypes) {
		t.Errorf("not sorted: %v", ContractTypes)
	}
}
